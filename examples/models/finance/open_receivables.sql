{{ config(
    materialized = 'incremental',
    unique_key = 'customer_id',
    tags = ['finance'],
    description = 'What each customer owes now: open invoices, their total, the oldest due date.',
) }}
-- A customer whose last open invoice is paid or voided leaves this table: the
-- build deletes their row, and the model's history keeps when they owed what.
SELECT
    i.customer_id        AS customer_id,
    c.name               AS name,
    count(*)             AS open_invoices,
    sum(i.total)         AS open_amount,
    min(i.due_date)      AS oldest_due_date
FROM {{ source('invoicing', 'invoices') }} i
JOIN {{ source('invoicing', 'customers') }} c ON c.id = i.customer_id
WHERE i.status = 'open'
GROUP BY i.customer_id, c.name
