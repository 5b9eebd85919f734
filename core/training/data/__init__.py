"""Training data for phase 5: formats read at file:line, token lengths, exact and near
duplicates, eval-set leakage, PII, tag balance, a stable split, and the prepared copy that
training reads (the user's file is never edited).
"""
