{{ config(materialized='incremental', unique_key='id') }}
SELECT id, customer_id, status, amount,
       CASE WHEN status = 'paid' THEN amount ELSE 0 END AS paid_amount
FROM {{ source('bench', 'events') }} WHERE status <> 'void'
