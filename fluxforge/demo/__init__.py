"""`fluxforge demo`: the whole chain offline (loopback exchange, collector, ETL) and a
summary read back from the files it wrote."""
