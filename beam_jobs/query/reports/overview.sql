-- overview: the corpus in numbers.
-- Answers: how many records were read, how many distinct papers they are, how much of the
-- corpus repeats (all duplicates, then by kind: exact, near, ...), and what was
-- dead-lettered, by reason.
-- Columns:
--   metric  records | papers | duplicates | duplicates.<dup_kind> per kind (exact, near, ...)
--           | digest_dates | source_files | dead_letters | dead_letters.<reason> per reason
--   value   the count
--   share   for record counts: value / records (on `duplicates` this is the duplicate rate,
--           1 - papers / records); for dead letters: value / (records + dead_letters), the
--           share of all record slots and failed files; NULL for dates and files
WITH r AS (
    SELECT count(*) AS records,
           count(DISTINCT cluster_id) AS papers,
           count(DISTINCT digest_date) AS digest_dates
    FROM records
),
kinds AS (SELECT dup_kind, count(*) AS n FROM records WHERE dup_kind IS NOT NULL GROUP BY dup_kind),
d AS (SELECT count(*) AS dead_letters FROM dead_letter),
f AS (
    SELECT count(DISTINCT source_file) AS source_files
    FROM (SELECT source_file FROM records UNION ALL SELECT source_file FROM dead_letter)
),
reasons AS (SELECT reason, count(*) AS n FROM dead_letter GROUP BY reason),
rows AS (
    SELECT 1 AS ord, 'records' AS metric, records AS value, records / nullif(records, 0) AS share FROM r
    UNION ALL SELECT 2, 'papers', papers, papers / nullif(records, 0) FROM r
    UNION ALL SELECT 3, 'duplicates', records - papers, (records - papers) / nullif(records, 0) FROM r
    UNION ALL
    SELECT 3 + row_number() OVER (ORDER BY n DESC, dup_kind) / 100, 'duplicates.' || dup_kind, n,
           n / nullif(records, 0)
    FROM kinds, r
    UNION ALL SELECT 4, 'digest_dates', digest_dates, NULL FROM r
    UNION ALL SELECT 5, 'source_files', source_files, NULL FROM f
    UNION ALL SELECT 6, 'dead_letters', dead_letters, dead_letters / nullif(records + dead_letters, 0) FROM r, d
    UNION ALL
    SELECT 6 + row_number() OVER (ORDER BY n DESC, reason) / 100, 'dead_letters.' || reason, n,
           n / nullif(records + dead_letters, 0)
    FROM reasons, r, d
)
SELECT metric, value, round(share, 4) AS share FROM rows ORDER BY ord;
