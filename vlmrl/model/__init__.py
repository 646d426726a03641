"""vlmrl.model"""
