import BootSimulator
import ESPCore
import VirtualDevice

/// A virtual device served to loader clients (`espforge device serve`): the folder's device with
/// a protocol engine whose firmware boots under the sdkconfig remembered in the folder (none:
/// each boot infers the options from the device as it is then), faults from `faults`/`seed`.
public enum VirtualDeviceServing {
    public struct Options: Sendable {
        /// Fault specification (``FaultPlan``), e.g. `drop=0.001,flip=0.0005`.
        public var faults: String?
        public var seed: UInt64 = 1
        /// Seed for the simulated hardware RNG of the boots (reproducible keys; tests only).
        public var rngSeed: UInt64?
        /// Sleep for virtual time (slow, for demos).
        public var realtime = false
        /// Disconnect a TCP client that sends nothing for this many seconds (0: never).
        public var idleTimeout: Double = 30
        /// Told which options a boot inferred when no sdkconfig is remembered.
        public var onInferred: (@Sendable ([String]) -> Void)?
        public init() {}
    }

    /// The server for the device in `state`, not yet serving.
    public static func server(state: String, _ options: Options) throws -> DeviceServer {
        let store = DeviceStore(directory: state)
        let engine = ProtocolEngine(device: try store.load())
        let plan = try options.faults.map { try FaultPlan(spec: $0) }
        if let plan, !plan.stuckEFuseBits.isEmpty, engine.chip == nil {
            throw DeviceError.badFaultSpec(plan.spec, "efuse-stuck applies to ESP32-S3/C3 devices only")
        }
        // ESP32, ESP32-S3 and ESP32-C3 alike: leaving the loader runs the boot simulator under the
        // remembered sdkconfig, else the options inferred from the device at each boot.
        engine.firmware = VirtualFirmware.hook(config: try SDKConfig.remembered(inStateFolder: state).map { BootConfig(sdkconfig: $0) },
                                               rngSeed: options.rngSeed, onInferred: { options.onInferred?($0) })
        let server = DeviceServer(store: store, engine: engine, faultPlan: plan, faultSeed: options.seed, realtime: options.realtime)
        guard options.idleTimeout >= 0 else { throw UsageError("--idle-timeout must be 0 (never) or a number of seconds") }
        server.idleTimeout = options.idleTimeout > 0 ? options.idleTimeout : nil
        return server
    }

    /// `HOST:PORT` (port 0: any free port).
    public static func listenAddress(_ text: String) throws -> (host: String, port: Int) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]) else {
            throw UsageError("'\(text)' is not HOST:PORT", hint: "e.g. --listen 127.0.0.1:5555")
        }
        return (String(parts[0]), port)
    }
}
