//! Property tests of request parsing (placeholder replaced by the DTO property suite).
