"""vlmrl.vldac"""
