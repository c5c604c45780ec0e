"""The report: matched-L0 comparisons, paired tests, the budget check, the leaderboard, its
figures and the regression comparison of two result files."""
