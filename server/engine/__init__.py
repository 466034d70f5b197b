"""Model engines and the one generation worker that drives them."""
