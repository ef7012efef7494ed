"""Maintenance of what the ETL wrote: compaction of closed partitions, disk retention,
and the lock that keeps the timers' oneshots from running over each other.
(`fluxforge.sync` ships the data to S3 beside this package.)
"""
