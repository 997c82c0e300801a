//! Integration tests: real peercat processes on 127.0.0.1.
