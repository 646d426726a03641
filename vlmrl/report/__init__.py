"""vlmrl.report"""
