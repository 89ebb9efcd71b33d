-- A thread may be a reviewer's note that a pitfall of the analysis on its line was
-- considered: the pitfall's kind (`static-local`), checked against the analyses when
-- the thread is started.
ALTER TABLE comments ADD COLUMN pitfall TEXT;
