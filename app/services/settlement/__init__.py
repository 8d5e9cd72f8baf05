"""Settlement: the keeper that releases and refunds orders when their time comes, and the merchants' T+N
settlement pipeline."""
