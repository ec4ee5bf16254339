"""Networks: nn.Modules only."""

from anomgan.models.networks import (
                                     ConvDiscriminator,
                                     ConvEncoder,
                                     ConvGenerator,
                                     CriticEncoder,
                                     MLPDiscriminator,
                                     MLPEncoder,
                                     MLPGenerator,
                                     build_models,
)

__all__ = ["ConvGenerator", "ConvDiscriminator", "ConvEncoder", "CriticEncoder", "MLPGenerator", "MLPDiscriminator",
           "MLPEncoder", "build_models"]
