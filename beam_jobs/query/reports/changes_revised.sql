-- changes_revised: new versions of known papers, and what changed.
-- Answers: which texts this update adds to a paper the earlier snapshot already held (a
-- revision merged by meaning, a near copy: any text that paper had not been listed with),
-- and how each differs from the paper as it was (its canonical record in the earlier
-- snapshot). One row per new text, at its first listing. The earlier snapshot is the view
-- previous_records / previous_papers (see changes_new); exact re-listings are changes_again.
-- Columns:
--   title         title of this version
--   known_title   title of the known paper as it was (the earlier snapshot's canonical)
--   what_changed  comma-separated, in this order: title reworded | abstract extended (the old
--                 abstract is a prefix of this one) | abstract shortened (this one is a prefix
--                 of the old) | abstract reworded (neither; links left out of the comparison,
--                 case ignored) | code link added | code link removed | small edits (none of these)
--   added_links   links of this version the known paper's canonical does not have
--   dup_kind      semantic (a revision) | near | exact (of another new listing); NULL when
--                 this version is now the paper's canonical
--   similarity    to the record it matched (duplicate_of): cosine (semantic), Jaccard (near)
--   listings      records of this text in this update
--   digest_date   digest date of its first listing
--   record_id     its first listing (by digest date, source file, slot)
--   cluster_id    the paper's id now
WITH added AS (  -- the records of this update
    SELECT r.*
    FROM records r
    ANTI JOIN previous_records o USING (record_id)
),
known AS (  -- current paper -> the earlier paper it continues (the oldest, if it merged two)
    SELECT r.cluster_id, arg_min(k.cluster_id, (k.first_seen, k.cluster_id)) AS known_id
    FROM records r
    JOIN previous_records o USING (record_id)
    JOIN previous_papers k ON k.cluster_id = o.cluster_id
    GROUP BY r.cluster_id
),
known_texts AS (  -- texts each current paper was listed with before this update
    SELECT DISTINCT r.cluster_id, r.content_hash
    FROM records r
    SEMI JOIN previous_records o USING (record_id)
),
new_texts AS (
    SELECT a.*,
           count(*) OVER text AS listings,
           row_number() OVER (text ORDER BY a.digest_date NULLS LAST, a.source_file,
                              a.record_index) AS nth
    FROM added a
    JOIN known USING (cluster_id)
    ANTI JOIN known_texts t USING (cluster_id, content_hash)
    WINDOW text AS (PARTITION BY a.cluster_id, a.content_hash)
),
compared AS (
    SELECT n.*,
           k.title AS known_title,
           -- links are compared on their own: a link in the text is not a rewording
           lower(trim(regexp_replace(n.abstract, 'https?://\S+', '', 'g'))) AS body,
           lower(trim(regexp_replace(k.abstract, 'https?://\S+', '', 'g'))) AS known_body,
           list_filter(n.code_urls, lambda u: NOT list_contains(k.code_urls, u)) AS added_links,
           list_filter(k.code_urls, lambda u: NOT list_contains(n.code_urls, u)) AS removed_links
    FROM new_texts n
    JOIN known USING (cluster_id)
    JOIN previous_papers k ON k.cluster_id = known.known_id
    WHERE n.nth = 1
)
SELECT title,
       known_title,
       coalesce(nullif(concat_ws(', ',
           CASE WHEN lower(title) <> lower(known_title) THEN 'title reworded' END,
           CASE
               WHEN body = known_body THEN NULL
               WHEN starts_with(body, known_body) THEN 'abstract extended'
               WHEN starts_with(known_body, body) THEN 'abstract shortened'
               ELSE 'abstract reworded'
           END,
           CASE WHEN len(added_links) > 0 THEN 'code link added' END,
           CASE WHEN len(removed_links) > 0 THEN 'code link removed' END
       ), ''), 'small edits') AS what_changed,
       added_links,
       dup_kind,
       round(similarity::DOUBLE, 3) AS similarity,
       listings,
       digest_date,
       record_id,
       cluster_id
FROM compared
ORDER BY digest_date NULLS LAST, title, record_id;
