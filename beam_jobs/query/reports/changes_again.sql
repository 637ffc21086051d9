-- changes_again: known papers listed again in this update.
-- Answers: which papers the earlier snapshot already held were re-listed in this update as
-- exact copies of a text they had been listed with (new versions are changes_revised), and
-- for how many digest days in a row they have been listed, up to their latest listing. A
-- digest day is a date any digest was listed on, so a day without a digest breaks no streak.
-- Longest streak first. The earlier snapshot is the view previous_records (see changes_new).
-- Columns:
--   title           canonical title of the paper
--   listings_added  records of the paper in this update that copy a text it had
--   days_in_a_row   consecutive digest days, ending at last_seen, the paper was listed on
--   days_seen       distinct digest dates it was listed on, in all
--   first_seen      earliest digest date it was listed on
--   last_seen       latest digest date it was listed on
--   cluster_id      the paper's id (record_id of its canonical record)
WITH added AS (  -- the records of this update
    SELECT r.*
    FROM records r
    ANTI JOIN previous_records o USING (record_id)
),
known_texts AS (  -- texts each current paper was listed with before this update
    SELECT DISTINCT r.cluster_id, r.content_hash
    FROM records r
    SEMI JOIN previous_records o USING (record_id)
),
again AS (
    SELECT a.cluster_id, count(*) AS listings_added
    FROM added a
    SEMI JOIN known_texts t USING (cluster_id, content_hash)
    GROUP BY a.cluster_id
),
digest_days AS (  -- every digest date, numbered
    SELECT digest_date, row_number() OVER (ORDER BY digest_date) AS day_no
    FROM (SELECT DISTINCT digest_date FROM records WHERE digest_date IS NOT NULL)
),
listed AS (  -- the digest days each re-listed paper was on; a run of days shares `island`
    SELECT l.cluster_id, d.day_no,
           d.day_no - row_number() OVER (PARTITION BY l.cluster_id ORDER BY d.day_no) AS island
    FROM (SELECT DISTINCT cluster_id, digest_date FROM records SEMI JOIN again USING (cluster_id)) l
    JOIN digest_days d USING (digest_date)
),
streaks AS (  -- `island` never decreases with the day: the latest run has the largest
    SELECT cluster_id,
           count(*) FILTER (WHERE island = last_island) AS days_in_a_row,
           count(*) AS days_seen
    FROM (SELECT *, max(island) OVER (PARTITION BY cluster_id) AS last_island FROM listed)
    GROUP BY cluster_id
)
SELECT p.title,
       g.listings_added,
       coalesce(s.days_in_a_row, 0) AS days_in_a_row,
       coalesce(s.days_seen, 0) AS days_seen,
       p.first_seen,
       p.last_seen,
       p.cluster_id
FROM again g
JOIN papers p USING (cluster_id)
LEFT JOIN streaks s USING (cluster_id)
ORDER BY days_in_a_row DESC, g.listings_added DESC, p.first_seen NULLS LAST, p.title, p.cluster_id;
