"""Opening and speaking to Redis: connections, the hot-path wire, embedded servers, the proxy, topologies."""
