import EFuse
import ESPCore
import Flasher
import Transport

/// The eFuse client for the chip behind a `--port`: the ESP32's (``EFuseClient``) or, for an
/// ESP32-S3 / ESP32-C3, the field-map client (``FieldMapEFuseClient``).
public enum EFusePortTarget {
    case esp32(EFuseClient)
    case fieldMap(FieldMapEFuseClient)

    public var chip: String {
        switch self {
        case .esp32: return "esp32"
        case let .fieldMap(c): return c.map.chip
        }
    }
}

public enum EFusePortError: Error, Equatable, Sendable {
    /// `--chip` names another chip than the one on the port.
    case chipMismatch(requested: String, detected: String, port: String)
    case unknownChip(String)
}

extension EFusePortError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .chipMismatch(requested, detected, port):
            return Diagnostic("--chip \(requested) was given but the chip on \(port) is an \(detected.uppercased()); nothing was read or burned",
                              hint: "check the board on \(port), or leave out --chip to use the detected chip")
        case let .unknownChip(c):
            return Diagnostic("--chip \(c) is not a chip whose eFuses espforge burns over a port",
                              hint: "give esp32, esp32s3 or esp32c3")
        }
    }
}

public enum EFusePort {
    /// Opens `port`, detects the chip and checks it against `chip` when given. Serial and
    /// socket ports: the flasher's session identifies an ESP32 (magic word); any other chip is
    /// reconnected and identified by GET_SECURITY_INFO's chip id (else the magic word) as an S3
    /// or C3, or refused. `virtual:` devices: the magic word.
    public static func open(port: String, baud: Int?, before: ResetMode = .defaultReset, chip: String? = nil) throws -> EFusePortTarget {
        let requested = chip?.lowercased()
        if let requested, requested != "esp32", EFuseFieldMap.named(requested) == nil {
            throw EFusePortError.unknownChip(requested)
        }
        let (access, isESP32) = try openAccess(port: port, baud: baud, before: before)
        // The flasher's session accepted an ESP32: nothing more is asked of the chip (the ESP32
        // path sends exactly what it did before). Otherwise: S3/C3 detection.
        let found: String? = isESP32 == true ? "esp32" : detect(access) ?? (isESP32 == nil ? "esp32" : nil)
        guard let detected = found else {
            // Neither an ESP32 (the flasher refused its magic word) nor an S3/C3.
            throw FlasherError.unknownChip(magic: (try? access.readRegister(ChipProbe.romMagicAddress)) ?? 0)
        }
        if let requested, requested != detected {
            throw EFusePortError.chipMismatch(requested: requested, detected: detected, port: port)
        }
        if detected == "esp32" { return .esp32(EFuseClient(access: access)) }
        return .fieldMap(try FieldMapEFuseClient(access: access, chip: detected))
    }

    /// Register access to the chip on `port`. The flasher's loader connection takes ESP32s only
    /// (it refuses another chip's magic word); on that refusal the port is closed and opened again
    /// as `chip info` does for an S3/C3: reset into the ROM loader and SYNC, nothing else (the ROM
    /// loader at 115200 baud; no stub, no baud change).
    /// `isESP32`: true when the flasher's session accepted the chip as an ESP32, false when it
    /// refused it, nil for a virtual device (not asked).
    static func openAccess(port: String, baud: Int?, before: ResetMode) throws -> (access: any RegisterAccess, isESP32: Bool?) {
        if port.hasPrefix("virtual:") { return (try openRegisterAccess(port: port, baud: baud, before: before), nil) }
        var o = SessionOptions()
        o.baud = baud ?? 115_200
        o.before = before
        o.after = .noReset
        let session = FlashSession(port: port, options: o)
        do {
            try session.connect()
            guard let c = session.client else { throw FlasherError.gaveUp(port: port, why: "not connected") }
            return (c, true)
        } catch FlasherError.unknownChip {
            session.finishWithoutReset()
        }
        let chipPort = try o.ports.open(port)
        let c = LoaderClient(port: chipPort)
        c.timeout = o.timeout
        do { try c.enterLoaderAndSync(before: before, portName: port) } catch {
            chipPort.close()
            throw error
        }
        return (c, false)
    }

    /// The S3/C3 chip name behind `access`, or nil (an ESP32 or an unknown chip).
    public static func detect(_ access: any RegisterAccess) -> String? {
        if let client = access as? LoaderClient { return ChipProbe.detectFieldMapChip(client)?.name }
        guard let magic = try? access.readRegister(ChipProbe.romMagicAddress) else { return nil }
        return FieldMapChipFacts.table.first { $0.magic.contains(magic) }?.name
    }
}
