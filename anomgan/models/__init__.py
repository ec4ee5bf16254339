"""Networks: nn.Modules only."""

from anomgan.models.networks import (
                                     ConvDiscriminator,
                                     ConvEncoder,
                                     ConvGenerator,
                                     MLPDiscriminator,
                                     MLPEncoder,
                                     MLPGenerator,
                                     build_models,
)

__all__ = ["ConvGenerator", "ConvDiscriminator", "ConvEncoder", "MLPGenerator", "MLPDiscriminator", "MLPEncoder",
           "build_models"]
