"""vlmrl.data_recipes"""
