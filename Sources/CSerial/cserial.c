// Serial-port helpers that Swift's Glibc module cannot express: termios2 custom baud rates and
// modem-line ioctls. Kept separate from <termios.h>, which clashes with <asm/termbits.h>.
#define _GNU_SOURCE
#include "cserial.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

#if defined(__linux__)
#include <asm/termbits.h>

int espforge_serial_set_baud(int fd, int baud) {
    struct termios2 t;
    if (ioctl(fd, TCGETS2, &t) != 0) return -1;
    t.c_cflag &= ~CBAUD;
    t.c_cflag |= BOTHER;
    t.c_cflag &= ~(CBAUD << IBSHIFT);
    t.c_cflag |= BOTHER << IBSHIFT;
    t.c_ispeed = (speed_t)baud;
    t.c_ospeed = (speed_t)baud;
    return ioctl(fd, TCSETS2, &t);
}

int espforge_serial_get_baud(int fd) {
    struct termios2 t;
    if (ioctl(fd, TCGETS2, &t) != 0) return -1;
    return (int)t.c_ospeed;
}
#else
#include <termios.h>
int espforge_serial_set_baud(int fd, int baud) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0) return -1;
    if (cfsetspeed(&t, (speed_t)baud) != 0) return -1;
    return tcsetattr(fd, TCSANOW, &t);
}
int espforge_serial_get_baud(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0) return -1;
    return (int)cfgetospeed(&t);
}
#endif

int espforge_serial_set_modem(int fd, int dtr, int rts) {
    int set = 0, clear = 0;
    if (dtr > 0) set |= TIOCM_DTR; else if (dtr == 0) clear |= TIOCM_DTR;
    if (rts > 0) set |= TIOCM_RTS; else if (rts == 0) clear |= TIOCM_RTS;
    if (set && ioctl(fd, TIOCMBIS, &set) != 0) return -1;
    if (clear && ioctl(fd, TIOCMBIC, &clear) != 0) return -1;
    return 0;
}

int espforge_openpty(int *master, int *slave, char *name, int len) {
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0) return -1;
    if (grantpt(m) != 0 || unlockpt(m) != 0) { close(m); return -1; }
    const char *n = ptsname(m);
    if (!n) { close(m); return -1; }
    int s = open(n, O_RDWR | O_NOCTTY);
    if (s < 0) { close(m); return -1; }
    if (name && len > 0) { strncpy(name, n, (size_t)len - 1); name[len - 1] = 0; }
    *master = m;
    *slave = s;
    return 0;
}
