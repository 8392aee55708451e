import EFuse
import ESPCore
import Flasher
import Foundation
import Transport

/// Is there a board in a slot, and which? Blocking I/O: call it on the slot's own thread.
///
/// - serial device: the node must exist (a `/dev/serial/by-path` node disappears with its
///   board's USB-UART), then the chip is reset into its ROM loader and must answer SYNC;
/// - `socket://HOST:PORT`: a refused connection is an empty slot; an accepted one must answer;
/// - `virtual:DIR?…`: the folder must exist, then the same as a serial port.
///
/// A board that answers is known by its factory MAC (eFuse block 0), read through the ROM
/// loader: nothing is written.
public struct BoardProbe: Sendable {
    public var ports: PortOpener
    public var before: ResetMode
    /// Seconds to wait for each loader reply.
    public var timeout: Double

    public init(ports: PortOpener, before: ResetMode = .defaultReset, timeout: Double = 1) {
        self.ports = ports; self.before = before; self.timeout = timeout
    }

    /// The factory MAC from the two eFuse block 0 words that hold it (two register reads: a
    /// probe stays short, so a board's own traffic tells probes from provisioning).
    public static func factoryMAC(_ access: RegisterAccess, layout: EFuseLayout = .esp32) throws -> String {
        MACAddress.format(try EFuseArray.readESP32MAC(from: access, layout: layout))
    }

    /// The factory MAC of the chip behind `client`, whichever it is: the ESP32's from block 0
    /// (the ROM magic word first: one more read), an ESP32-S3/C3's from BLOCK1 through its field
    /// map (magic word, else GET_SECURITY_INFO's chip id; two more reads). Nothing is written.
    public static func factoryMAC(chipOn client: LoaderClient) throws -> String {
        let magic = try client.readRegister(ChipProbe.romMagicAddress)
        if ChipSpec.named("esp32")?.romChipMagic.contains(magic) == true { return try factoryMAC(client) }
        guard let row = FieldMapChipFacts.table.first(where: { $0.magic.contains(magic) }) ?? ChipProbe.detectFieldMapChip(client),
              let map = EFuseFieldMap.named(row.name) else {
            throw FlasherError.unknownChip(magic: magic)
        }
        var words = EFuseBlockWords(map: map)
        let first = map.controllerBase + map.readRegisterOffset(block: 1)
        for w in 0..<2 { words.setWord(1, w, try client.readRegister(first + UInt32(4 * w))) }
        return EFuseFieldMapSummary(words: words, map: map).mac
    }

    public func probe(_ port: String) -> BoardPresence {
        if port.hasPrefix("virtual:") {
            let dir = String(port.dropFirst("virtual:".count).prefix { $0 != "?" })
            guard FileManager.default.fileExists(atPath: dir + "/device.json") else { return .absent }
        } else if !port.hasPrefix("socket://") {
            guard FileManager.default.fileExists(atPath: port) else { return .absent }
        }
        let link: ChipPort
        do { link = try ports.open(port) } catch let e as TransportError {
            if case .openFailed = e { return .absent }
            return .linkError(e.diagnostic.message)
        } catch {
            return .linkError(String(describing: error))
        }
        defer { link.close() }
        do {
            let client = LoaderClient(port: link)
            client.timeout = timeout
            do { try client.enterLoaderAndSync(before: before, portName: port, rounds: 2, attempts: 3) } catch FlasherError.noSync {
                return .linkError("the ROM loader does not answer on \(port)")
            }
            return .present(mac: try Self.factoryMAC(chipOn: client))
        } catch let e as TransportError {
            // The peer closed at once: a slot whose board was just taken out.
            if case .closed = e { return .absent }
            return .linkError(e.diagnostic.message)
        } catch {
            return .linkError((error as? DiagnosticConvertible)?.diagnostic.message ?? String(describing: error))
        }
    }
}
