"""bpcore"""
