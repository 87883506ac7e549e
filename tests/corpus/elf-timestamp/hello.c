/* Broken on purpose: the Makefile writes the time of the build into
 * built.h, so the binary's .rodata differs in every build. */
#include <stdio.h>
#include "built.h"

int main(void) {
    printf("hello, built at %s\n", BUILT_AT);
    return 0;
}
