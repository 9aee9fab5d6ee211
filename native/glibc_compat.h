// Force-included into every C++ file on Linux (CMakeLists.txt), so that the addon built on a
// new glibc loads on an old one: glibc 2.34 moved libdl and libpthread into libc and gave these
// functions a new default symbol version (GLIBC_2.34), which a build on Debian 12 would require
// of every machine it runs on (Ubuntu 20.04, Debian 11, RHEL 8, and the GPU containers built on
// them, have 2.31 and older). The earlier versions stay in every glibc since as compatible
// aliases of the same functions: the references are bound to them instead. npm run prebuild
// checks the result (scripts/prebuild.ts: no GLIBC version newer than 2.28).
#pragma once
#if defined(__linux__)
#include <features.h>
#if defined(__GLIBC__) && defined(__x86_64__)
#define FM_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__GLIBC__) && defined(__aarch64__)
#define FM_GLIBC_BASE "GLIBC_2.17"
#endif
#if defined(FM_GLIBC_BASE)
__asm__(".symver dlopen,dlopen@" FM_GLIBC_BASE);
__asm__(".symver dlsym,dlsym@" FM_GLIBC_BASE);
__asm__(".symver dlerror,dlerror@" FM_GLIBC_BASE);
__asm__(".symver dlclose,dlclose@" FM_GLIBC_BASE);
__asm__(".symver pthread_once,pthread_once@" FM_GLIBC_BASE);
#endif
#endif
