-- near_duplicates: versions of a paper that are not exact copies, and what changed.
-- Answers: every record clustered as a near copy (MinHash Jaccard) of the record it copies,
-- or matched to it by another non-exact kind (e.g. semantic, for revisions), with the
-- similarity and a cheap description of the difference. Least similar first within a kind:
-- those are the pairs worth eyeballing.
-- Columns:
--   dup_kind             near | any other non-exact kind (semantic: a rewritten revision)
--   canonical_title      title of the record it copies (duplicate_of)
--   copy_title           title of this version
--   similarity           to the record it copies: estimated Jaccard (near), cosine (semantic)
--   what_changed         title reworded (abstract identical) | title and abstract |
--                        abstract truncated (this abstract is a prefix of the other's) |
--                        text appended (the other's abstract is a prefix of this one) |
--                        small edits (abstract length within 3 characters: typos) |
--                        text removed | text added (by abstract length)
--   title_edits          Levenshtein distance between the two titles
--   abstract_chars       abstract length of this version minus the other's
--   links_added          code/project links in this version minus in the other
--   copy_date            digest date of this version
--   canonical_date       digest date of the record it copies
--   record_id            this version
--   canonical_record_id  the record it copies
SELECT r.dup_kind,
       c.title AS canonical_title,
       r.title AS copy_title,
       round(r.similarity::DOUBLE, 3) AS similarity,
       CASE
           WHEN r.title <> c.title AND r.abstract = c.abstract THEN 'title reworded'
           WHEN r.title <> c.title THEN 'title and abstract'
           WHEN starts_with(c.abstract, r.abstract) THEN 'abstract truncated'
           WHEN starts_with(r.abstract, c.abstract) THEN 'text appended'
           WHEN abs(length(r.abstract) - length(c.abstract)) <= 3 THEN 'small edits'
           WHEN length(r.abstract) < length(c.abstract) THEN 'text removed'
           ELSE 'text added'
       END AS what_changed,
       levenshtein(r.title, c.title) AS title_edits,
       length(r.abstract) - length(c.abstract) AS abstract_chars,
       len(r.code_urls) - len(c.code_urls) AS links_added,
       r.digest_date AS copy_date,
       c.digest_date AS canonical_date,
       r.record_id,
       c.record_id AS canonical_record_id
FROM records r
JOIN records c ON r.duplicate_of = c.record_id
WHERE r.dup_kind IS NOT NULL AND r.dup_kind <> 'exact'
ORDER BY r.dup_kind, r.similarity, r.record_id;
