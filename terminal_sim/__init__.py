"""terminal_sim"""
