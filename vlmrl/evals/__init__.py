"""vlmrl.evals"""
