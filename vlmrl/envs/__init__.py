"""vlmrl.envs"""
