{{ config(materialized='incremental', unique_key='customer_id') }}
SELECT customer_id, count(*) AS events, sum(amount) AS amount, max(id) AS last_id
FROM {{ source('bench', 'events') }} WHERE status <> 'void' GROUP BY customer_id
