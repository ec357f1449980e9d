"""The matching rules are the verifier's own functions: the app computes a round's
matches with exactly the code an auditor runs to recompute them
(verifier/counterfund_verify.py, which stands alone)."""

from verifier.counterfund_verify import capped_matches, quadratic_matches, quadratic_raw

__all__ = ["capped_matches", "quadratic_matches", "quadratic_raw"]
