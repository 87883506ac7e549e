#include <stdio.h>

/* __FILE__ names the build path: the c profile's -ffile-prefix-map keeps
 * it the same wherever the sources sit. */
int main(void) {
    printf("hello from %s, built reproducibly\n", __FILE__);
    return 0;
}
