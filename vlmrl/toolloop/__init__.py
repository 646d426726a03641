"""vlmrl.toolloop"""
