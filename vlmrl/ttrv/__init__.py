"""vlmrl.ttrv"""
