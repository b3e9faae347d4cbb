-- 0019 learn progress: which of the Learn articles each person has finished reading.
--
-- The articles ship with the package (wealthalloc/learn/articles), not in the database, so a row
-- names its article by slug; a slug the package no longer has is simply not listed. Reading an
-- article again keeps the first completion time.
CREATE TABLE learn_progress (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    slug TEXT NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 100),
    completed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, slug)
);
