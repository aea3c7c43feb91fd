//! Adapts the host's lent [`I2cBusBox`] to `embedded_hal::i2c::I2c`, which the `ina219` driver
//! expects.

use embedded_hal::i2c::{self, ErrorType, I2c, Operation, SevenBitAddress};
use labctl_plugin_api::{I2cBusBox, I2cError, I2cErrorKind};

pub struct BusAdapter(pub I2cBusBox);

#[derive(Debug)]
pub struct BusError(pub I2cError);

impl i2c::Error for BusError {
    fn kind(&self) -> i2c::ErrorKind {
        use i2c::{ErrorKind as K, NoAcknowledgeSource as N};
        match self.0.kind {
            I2cErrorKind::NoAcknowledgeAddress => K::NoAcknowledge(N::Address),
            I2cErrorKind::NoAcknowledgeData => K::NoAcknowledge(N::Data),
            I2cErrorKind::Bus => K::Bus,
            I2cErrorKind::ArbitrationLoss => K::ArbitrationLoss,
            I2cErrorKind::Overrun => K::Overrun,
            I2cErrorKind::Other => K::Other,
        }
    }
}

impl ErrorType for BusAdapter {
    type Error = BusError;
}

impl I2c<SevenBitAddress> for BusAdapter {
    fn write(&mut self, address: u8, bytes: &[u8]) -> Result<(), BusError> {
        self.0
            .write(address, bytes.into())
            .into_result()
            .map_err(BusError)
    }

    fn read(&mut self, address: u8, buf: &mut [u8]) -> Result<(), BusError> {
        self.0
            .read(address, buf.into())
            .into_result()
            .map_err(BusError)
    }

    fn write_read(&mut self, address: u8, bytes: &[u8], buf: &mut [u8]) -> Result<(), BusError> {
        self.0
            .write_read(address, bytes.into(), buf.into())
            .into_result()
            .map_err(BusError)
    }

    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), BusError> {
        // The lent bus offers write, read and write-read; a longer transaction runs as a sequence,
        // which is what the driver's `no_transaction` mode does anyway.
        let mut i = 0;
        while i < operations.len() {
            let (head, tail) = operations.split_at_mut(i + 1);
            match (&mut head[i], tail.first_mut()) {
                (Operation::Write(w), Some(Operation::Read(r))) => {
                    self.write_read(address, w, r)?;
                    i += 2;
                }
                (Operation::Write(w), _) => {
                    self.write(address, w)?;
                    i += 1;
                }
                (Operation::Read(r), _) => {
                    self.read(address, r)?;
                    i += 1;
                }
            }
        }
        Ok(())
    }
}
