{{ config(
    materialized = 'incremental',
    incremental_strategy = 'append',
    unique_key = 'payment_id',
    tags = ['finance'],
    description = 'Every payment as it came in, with its customer and country: a ledger, appended to and never rewritten.',
) }}
-- Append: each build adds the rows of the payments landed since the last build
-- (joined with their invoice and customer as they are then); rows already
-- appended are never recomputed, whatever later happens to the invoice.
SELECT
    p.id            AS payment_id,
    p.invoice_id    AS invoice_id,
    i.customer_id   AS customer_id,
    c.country       AS country,
    p.amount        AS amount,
    p.method        AS method,
    p.paid_at       AS paid_at
FROM {{ source('invoicing', 'payments') }} p
JOIN {{ source('invoicing', 'invoices') }} i ON i.id = p.invoice_id
JOIN {{ source('invoicing', 'customers') }} c ON c.id = i.customer_id
