import Foundation

/// One port's answer to `chip info`.
public struct PortChipInfo: Sendable, Codable, Equatable {
    public var port: String
    public var info: ChipInfo?
    /// Why the chip could not be read.
    public var error: String?
    public init(port: String, info: ChipInfo?, error: String?) { self.port = port; self.info = info; self.error = error }
}

extension DeviceRunner {
    /// Reads every port's chip at once, one thread per port (ROM loader, no stub, nothing written).
    public static func chipInfo(ports: [String], options: SessionOptions) -> [PortChipInfo] {
        let results = LockedSlots<PortChipInfo>(count: ports.count)
        let group = DispatchGroup()
        for (i, port) in ports.enumerated() {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                do {
                    results.set(i, PortChipInfo(port: port, info: try ChipInfo.read(port: port, options: options), error: nil))
                } catch {
                    results.set(i, PortChipInfo(port: port, info: nil, error: describe(error)))
                }
            }
            thread.stackSize = 4 << 20
            thread.start()
        }
        group.wait()
        return results.values.enumerated().map { $1 ?? PortChipInfo(port: ports[$0], info: nil, error: "did not finish") }
    }
}

/// Results written by several threads, one slot each.
final class LockedSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: T) { lock.lock(); slots[i] = value; lock.unlock() }
    var values: [T?] { lock.lock(); defer { lock.unlock() }; return slots }
}
