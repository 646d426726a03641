"""vlmrl.masters"""
