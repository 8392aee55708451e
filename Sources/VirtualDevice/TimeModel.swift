/// The virtual device's clock model. All figures in seconds.
///
/// Virtual time advances by: UART wire time of every byte in and out (10 bits per byte at the
/// current baud rate), a fixed turnaround per command, NOR operations (typical W25Q32JV figures:
/// 4 KiB sector erase 45 ms, 64 KiB block erase 150 ms, 256-byte page program 0.4 ms, chip erase
/// 10 s per 4 MiB), flash reads for MD5/READ_FLASH at the SPI read rate, and eFuse program cycles.
public struct TimeModel: Sendable, Equatable, Codable {
    public var bitsPerByte: Double = 10
    public var commandTurnaround: Double = 50e-6
    public var sectorErase: Double = 0.045
    public var blockErase: Double = 0.150
    public var pageProgram: Double = 0.0004
    /// Chip erase of a 4 MiB W25Q32JV (typical); scaled linearly with size.
    public var chipErasePer4MiB: Double = 10
    /// Flash read throughput (40 MHz SPI, dual I/O) in bytes per second.
    public var flashReadBytesPerSecond: Double = 10_000_000
    /// One eFuse program cycle.
    public var efuseProgram: Double = 0.001

    public init() {}

    public static let w25q32jv = TimeModel()

    public func wireTime(bytes: Int, baud: Int) -> Double {
        guard baud > 0 else { return 0 }
        return Double(bytes) * bitsPerByte / Double(baud)
    }

    public func chipErase(size: Int) -> Double {
        chipErasePer4MiB * Double(size) / Double(4 << 20)
    }

    public func flashRead(bytes: Int) -> Double {
        Double(bytes) / flashReadBytesPerSecond
    }
}

/// Counters the device keeps (persisted as `stats.json`): totals since creation and for the last
/// connection.
public struct DeviceCounters: Sendable, Equatable, Codable {
    public var bytesIn = 0
    public var bytesOut = 0
    public var commands = 0
    public var sectorErases = 0
    public var blockErases = 0
    public var chipErases = 0
    public var pagePrograms = 0
    public var efusePrograms = 0
    /// Virtual seconds: wire time + turnaround + flash/eFuse operations.
    public var virtualSeconds = 0.0
    /// Of `virtualSeconds`, the part spent on the wire.
    public var wireSeconds = 0.0
    /// Of `virtualSeconds`, the part spent in flash erase/program/read.
    public var flashSeconds = 0.0
    /// Times the chip left the loader and ran its firmware (first boots), and the part of
    /// `virtualSeconds` they took.
    public var firmwareRuns = 0
    public var firmwareSeconds = 0.0

    public init() {}

    public static func + (a: DeviceCounters, b: DeviceCounters) -> DeviceCounters {
        var r = a
        r.bytesIn += b.bytesIn
        r.bytesOut += b.bytesOut
        r.commands += b.commands
        r.sectorErases += b.sectorErases
        r.blockErases += b.blockErases
        r.chipErases += b.chipErases
        r.pagePrograms += b.pagePrograms
        r.efusePrograms += b.efusePrograms
        r.virtualSeconds += b.virtualSeconds
        r.wireSeconds += b.wireSeconds
        r.flashSeconds += b.flashSeconds
        r.firmwareRuns += b.firmwareRuns
        r.firmwareSeconds += b.firmwareSeconds
        return r
    }
}

/// Faults injected into a connection, counted by kind.
public struct FaultCounters: Sendable, Equatable, Codable {
    public var droppedBytes = 0
    public var flippedBits = 0
    public var stalls = 0
    public var stallSeconds = 0.0
    public var disconnects = 0
    public var resets = 0
    public init() {}

    public static func + (a: FaultCounters, b: FaultCounters) -> FaultCounters {
        var r = a
        r.droppedBytes += b.droppedBytes
        r.flippedBits += b.flippedBits
        r.stalls += b.stalls
        r.stallSeconds += b.stallSeconds
        r.disconnects += b.disconnects
        r.resets += b.resets
        return r
    }
}

/// `stats.json`.
public struct DeviceStats: Sendable, Equatable, Codable {
    public var total = DeviceCounters()
    public var lastConnection = DeviceCounters()
    public var connections = 0
    public var faults = FaultCounters()
    public var lastConnectionFaults = FaultCounters()
    public var faultSpec: String?
    public var faultSeed: UInt64?
    public init() {}
}
