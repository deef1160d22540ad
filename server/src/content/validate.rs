//! Reading and checking content (placeholder replaced below).
