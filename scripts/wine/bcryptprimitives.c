/* Wine 8 has no bcryptprimitives.dll; Rust's std on Windows gets its random
   numbers from ProcessPrng there. This stand-in answers from BCryptGenRandom,
   which Wine has. Only for running Windows builds under Wine in tests
   (scripts/build-windows.sh); never shipped. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    return BCryptGenRandom(NULL, data, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;
}
