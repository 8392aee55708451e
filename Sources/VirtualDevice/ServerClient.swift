import Foundation

extension DeviceServer {
    /// Serves one already accepted client (a socket) until it closes, a fault disconnects it, or
    /// `deadline` passes; state is saved as it changes. For servers that manage their own
    /// listeners (a fleet of slots where boards come and go).
    public func serveClient(fd: Int32, deadline: Date? = nil) throws {
        try serveConnection(readFD: fd, writeFD: fd, deadline: deadline, listenFD: nil)
    }
}
