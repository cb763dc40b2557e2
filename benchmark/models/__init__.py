"""The models under test: the template bank, the recurrent conv net, Wide ResNets, and the registry of classes."""
