{{ config(materialized = 'table', unique_key = 'country', tags = ['finance']) }}
-- Built from another model: `ref` makes customer_summary build first.
SELECT
    country,
    count(*)          AS customers,
    sum(billed)       AS billed,
    sum(paid)         AS paid
FROM {{ ref('customer_summary') }}
GROUP BY country
