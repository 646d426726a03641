"""vlmrl.games"""
