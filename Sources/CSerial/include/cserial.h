#ifndef ESPFORGE_CSERIAL_H
#define ESPFORGE_CSERIAL_H

/// Sets input and output speed of a serial descriptor to any rate (Linux: termios2 + BOTHER;
/// elsewhere: the standard speed table only). Returns 0 or -1 with errno set.
int espforge_serial_set_baud(int fd, int baud);
/// Reads back the output speed (Linux termios2), or -1.
int espforge_serial_get_baud(int fd);
/// Sets or clears the DTR and RTS modem lines (values < 0 leave a line unchanged).
/// Returns 0, or -1 with errno set (a pty has no modem lines: ENOTTY / EINVAL).
int espforge_serial_set_modem(int fd, int dtr, int rts);
/// Opens a pseudo-terminal pair; the slave name is copied into `name` (size `len`).
int espforge_openpty(int *master, int *slave, char *name, int len);

#endif
