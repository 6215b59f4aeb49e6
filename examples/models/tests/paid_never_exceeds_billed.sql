-- A customer cannot have paid more than they were billed: rows returned are failures.
SELECT customer_id, billed, paid
FROM {{ ref('customer_summary') }}
WHERE paid > billed
