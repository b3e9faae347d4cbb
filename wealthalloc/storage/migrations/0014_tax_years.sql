-- 0014 tax years: the capital-loss carryover a taxpayer brings into a year from before the platform
-- (what the prior year's Capital Loss Carryover Worksheet carried over), short and long term apart.
-- Entered with PUT /api/v1/me/tax-years/{year}; the realized-gains totals and harvesting's savings
-- start their Schedule D chain from it. Amounts are positive losses (or zero).
CREATE TABLE tax_years (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    year INTEGER NOT NULL CHECK (year BETWEEN 2000 AND 2200),
    short_term_carryforward NUMERIC(20, 4) NOT NULL DEFAULT 0 CHECK (short_term_carryforward >= 0),
    long_term_carryforward NUMERIC(20, 4) NOT NULL DEFAULT 0 CHECK (long_term_carryforward >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, year)
);
