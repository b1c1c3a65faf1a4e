package main

// syscall lacks SYS_FINIT_MODULE on amd64.
const sysFinitModule = 313
