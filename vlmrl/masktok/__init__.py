"""vlmrl.masktok"""
