DROP TABLE world_leases;
