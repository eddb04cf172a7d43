"""Patient call bells: calls, deterioration alerts, the weekly bell test and its report."""
