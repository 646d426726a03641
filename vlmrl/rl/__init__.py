"""vlmrl.rl"""
